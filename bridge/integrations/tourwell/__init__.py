"""The Tourwell CRM: its Open API client and the rate limit all processes share."""
