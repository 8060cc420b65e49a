"""The admin page and JSON API served by ``assethooks serve``."""
