"""The security audit log: what is not a gift event (admin logins, full-address views, key rotations),
append-only and chained like the gift events; and the admin site's hardening that feeds it."""
