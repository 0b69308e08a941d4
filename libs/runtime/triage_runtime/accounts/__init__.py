"""Review UI accounts: users, roles, passwords, sign-in sessions and the audit trail."""
