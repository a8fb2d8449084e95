"""Live updates: when a post becomes visible, every `fedi serve` process hears of it.

An event carries ids only (post, thread, group), never content: each stream asks the privacy
gate for its own viewer before it sends anything. On PostgreSQL the event is a NOTIFY in the
transaction that stores the post (delivered at commit, gone with a rollback) and each serve
process LISTENs; on SQLite (one process) it is handed to the process's hub after commit.
"""
