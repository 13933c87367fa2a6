"""Schema migrations, made by `tortoise makemigrations`."""
