"""The tables and the rules that guard them."""
