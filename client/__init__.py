"""The Baton SDK (`client.sdk.Baton`) and the `baton` CLI."""
