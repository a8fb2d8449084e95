"""Every /admin route, in one list for the app (each module guards its own routes)."""

from __future__ import annotations

from fedi.web import admin_federation, admin_groups, admin_instance, admin_oversight, admin_users

routes = [*admin_instance.routes, *admin_users.routes, *admin_groups.routes,
          *admin_federation.routes, *admin_oversight.routes]
