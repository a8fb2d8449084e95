"""Accounts: who may sign in from a browser, and how (issue 8 item 2).

Use cases over the store, with the pure rules (password policy, throttle limits, TOTP,
registration modes) in their own small modules. No Starlette here: web/ calls these.
"""
