"""A deleted SSH key leaves its fingerprint on the tokens it minted.

``NativeToken.ssh_key`` is SET_NULL so that deleting a key does not delete its tokens' audit
trail; without this, nothing would say any more which key minted them. Connected for every
deletion (admin, shell, a user's cascade), inside the deletion's transaction.
"""

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from tokens.models import NativeToken, SshKey


@receiver(pre_delete, sender=SshKey)
def remember_fingerprint(sender, instance, **kwargs):
    NativeToken.objects.filter(ssh_key=instance).update(ssh_key_fingerprint=instance.fingerprint)
