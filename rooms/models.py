"""Rooms, who belongs to them, and the messages posted in them.

Ordering: each message gets the room's next ``seq`` while the room row is locked (see
rooms/posting.py), so within a room both ``seq`` and ``id`` grow in commit order and a
reader resuming with ``after=ID`` can never skip a message that committed late. ``seq`` has
no gaps, which lets a live subscriber notice an event that arrived out of order.
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9_-]{0,63}$", "Lowercase letters, digits, - and _.")


class Room(models.Model):
    slug = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200, blank=True)
    last_seq = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="unique_membership")]

    def __str__(self):
        return f"{self.user} in {self.room}"


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField(editable=False)
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    body = models.TextField()
    # NULL (not "") means "no client_id", so the partial unique constraint ignores it.
    client_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # A targeted message is seen by its sender and its targets only. is_targeted spares the
    # join for the common untargeted case.
    is_targeted = models.BooleanField(default=False)
    targets = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="targeted_messages")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="unique_room_seq"),
            models.UniqueConstraint(
                fields=["room", "sender", "client_id"],
                condition=models.Q(client_id__isnull=False),
                name="unique_client_id_per_sender_room",
            ),
        ]
        indexes = [models.Index(fields=["room", "id"])]

    def __str__(self):
        return f"#{self.id} in {self.room_id}"
