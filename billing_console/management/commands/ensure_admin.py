import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "For the local run: make sure an 'admin' superuser exists, and print how to log in."

    def handle(self, *args, **options):
        User = get_user_model()
        password_file = settings.VAR_DIR / "admin-password.txt"
        user = User.objects.filter(username="admin").first()
        if user is None or not password_file.exists():
            password = secrets.token_urlsafe(12)
            user = user or User(username="admin", email="admin@localhost", is_staff=True, is_superuser=True)
            user.set_password(password)
            user.save()
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
        self.stdout.write(f"Admin login: {settings.SITE_URL}/admin/  user: admin  password: {password}")
        self.stdout.write(self._two_factor_note())

    @staticmethod
    def _two_factor_note() -> str:
        enrol = f"{settings.SITE_URL}/admin/2fa/"
        if settings.STAFF_2FA == "required":
            return (f"Two-factor (STAFF_2FA=required): after the password the admin sends every staff user to {enrol} "
                    "to scan a QR code with an authenticator app and confirm a code; it then shows 10 recovery codes "
                    "once (keep them). From then on the login asks for the app's code. Enrol right after the first login.")
        if settings.STAFF_2FA == "optional":
            return (f"Two-factor (STAFF_2FA=optional): turn it on for your account at {enrol} (authenticator app + "
                    "recovery codes); the login then asks for the code. Production defaults to STAFF_2FA=required.")
        return "Two-factor is off (STAFF_2FA=off): the admin asks for the password only."
