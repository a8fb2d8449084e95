"""Instance administration use cases shared by `fedi admin …` and the /admin pages.

Each function runs in the caller's transaction, checks its input before writing, and writes
its audit entry under the acting admin in that same transaction."""
