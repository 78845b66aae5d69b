def train_command() -> None:
    """placeholder"""
