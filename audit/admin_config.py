"""Django's admin app with our admin site (audit.admin_site) as `admin.site`; named in INSTALLED_APPS.

Kept apart from admin_site.py: this module is imported while the app registry
is still loading, so it must not import models.
"""

from django.contrib.admin.apps import AdminConfig


class HardenedAdminConfig(AdminConfig):
    default_site = "audit.admin_site.HardenedAdminSite"
