from convzoo.cli import main

main()
