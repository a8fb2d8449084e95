"""The Mastodon client API: one module per resource, thin over the use cases the web and
the CLI call (groups.reading, groups.posting, groups.membership, accounts.oauth …).

Every read goes through the one privacy gate; every endpoint names the scope it needs.
"""
