"""Create the peer's database: migrate, then users and knox tokens with Django's ORM.

    bench/.venv-knox/bin/python bench/peer_knox/prepare.py TOKENS_FILE COUNT [PER_USER]

Writes one token value a line to TOKENS_FILE. Tokens are spread over COUNT / PER_USER users
(default 2 a user): knox reads every token of the user on each request (to delete expired
ones), so piling all tokens on one user would make the peer look slower than it is.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from knox.models import AuthToken  # noqa: E402


def main() -> int:
    target = Path(sys.argv[1])
    count = int(sys.argv[2])
    per_user = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    call_command("migrate", verbosity=0, interactive=False)
    users = max(1, -(-count // per_user))
    values = []
    with transaction.atomic():
        User.objects.bulk_create(
            [User(username=f"user{i:06d}", password="!", is_active=True) for i in range(users)]
        )
        for i, user in enumerate(User.objects.order_by("id")):
            for _ in range(per_user):
                if len(values) < count:
                    _instance, value = AuthToken.objects.create(user=user)
                    values.append(value)
            if i + 1 >= users:
                break
    target.write_text("\n".join(values) + "\n")
    print(f"{len(values)} knox tokens for {users} users")
    return 0


if __name__ == "__main__":
    sys.exit(main())
