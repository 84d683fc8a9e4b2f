"""wsi_screen: whole-slide peripheral blood smear screening."""

__version__ = "0.1.0"
