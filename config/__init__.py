"""Settings, the menu and the seed data of the hall."""
