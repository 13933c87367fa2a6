"""The WeChat side of the Civic Center's account: webhook, dispatcher, API client, CLI."""
