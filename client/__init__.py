"""The Baton SDK (`client.sdk.Baton`), the `baton` CLI, and the test kit for process authors (`client.testkit`)."""
