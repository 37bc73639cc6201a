"""The app's tabs, one module each: its layout, its checks and its endpoints side by side, built by
``build(app, opened) -> Room`` (space/room.py). A tab imports only the shared modules of space/ (the corridors),
never another tab nor ``space.ui`` (tests/test_layers.py)."""
