import pytest
from django.core.management import call_command

from billing_console.models import CheckoutAttempt
from billing_console.services import vault_rotate
from billing_console.vault import Keyring, VaultError, derive_key, key_id_of

OLD = "old-master-key-aaaaaaaaaaaaaaaa"
NEW = "new-master-key-bbbbbbbbbbbbbbbb"


def make_attempt(email="buyer@example.com"):
    attempt = CheckoutAttempt(plan="pro", price_id="price_x", email_hint="b***@example.com")
    attempt.recovery_email = email
    attempt.save()
    return attempt


def test_short_master_key_is_refused_with_a_clear_error():
    with pytest.raises(VaultError, match="at least 16 characters"):
        derive_key("short")


def test_round_trip_through_the_descriptor(db):
    attempt = make_attempt()
    stored = CheckoutAttempt.objects.get(pk=attempt.pk)
    assert "buyer@example.com" not in stored.recovery_email_encrypted
    assert stored.recovery_email_encrypted.startswith("v1.")
    assert stored.recovery_email == "buyer@example.com"


def test_ciphertext_copied_to_another_row_fails_to_decrypt(db):
    first, second = make_attempt("a@example.com"), make_attempt("b@example.com")
    CheckoutAttempt.objects.filter(pk=second.pk).update(recovery_email_encrypted=first.recovery_email_encrypted)
    with pytest.raises(VaultError, match="does not decrypt"):
        CheckoutAttempt.objects.get(pk=second.pk).recovery_email


def test_same_row_other_field_is_bound_out():
    ring = Keyring("k" * 20)
    token = ring.encrypt("secret", "billing_console.x:1:a_encrypted")
    with pytest.raises(VaultError):
        ring.decrypt(token, "billing_console.x:1:b_encrypted")


def test_wrong_key_cannot_decrypt_and_says_which_key_is_missing():
    token = Keyring(OLD).encrypt("secret", "aad")
    with pytest.raises(VaultError, match="No key with id"):
        Keyring(NEW).decrypt(token, "aad")


def test_tampered_ciphertext_is_rejected():
    ring = Keyring(OLD)
    token = ring.encrypt("secret", "aad")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(VaultError):
        ring.decrypt(tampered, "aad")


def test_keyring_decrypts_with_previous_and_encrypts_with_current():
    old_token = Keyring(OLD).encrypt("secret", "aad")
    ring = Keyring(NEW, [OLD])
    assert ring.decrypt(old_token, "aad") == "secret"
    assert key_id_of(ring.encrypt("secret", "aad")) == derive_key(NEW).kid


def test_rotation_reencrypts_every_row_and_resumes_after_interruption(db, settings):
    settings.CLOUD_MASTER_KEY = OLD
    attempts = [make_attempt(f"user{i}@example.com") for i in range(5)]
    settings.CLOUD_MASTER_KEY, settings.CLOUD_MASTER_KEY_PREVIOUS = NEW, [OLD]

    batches = []

    def crash_after_first_batch(message):
        batches.append(message)
        raise KeyboardInterrupt  # the operator hits Ctrl-C, or the process dies

    with pytest.raises(KeyboardInterrupt):
        vault_rotate(batch_size=2, progress=crash_after_first_batch)
    new_kid = derive_key(NEW).kid
    kids = [key_id_of(t) for t in CheckoutAttempt.objects.order_by("pk").values_list("recovery_email_encrypted", flat=True)]
    assert kids.count(new_kid) == 2  # the first batch committed, the rest not yet

    totals = vault_rotate(batch_size=2).totals
    assert totals["billing_console.CheckoutAttempt.recovery_email_encrypted"] == 3  # only what was left
    settings.CLOUD_MASTER_KEY_PREVIOUS = []  # the old key is gone: everything must read with the new one
    for i, attempt in enumerate(attempts):
        assert CheckoutAttempt.objects.get(pk=attempt.pk).recovery_email == f"user{i}@example.com"


def test_rotate_command_prints_counts_and_never_plaintext(db, settings, capsys):
    settings.CLOUD_MASTER_KEY = OLD
    make_attempt("visible@example.com")
    settings.CLOUD_MASTER_KEY, settings.CLOUD_MASTER_KEY_PREVIOUS = NEW, [OLD]
    call_command("rotate_master_key", "--batch-size", "10")
    out = capsys.readouterr().out
    assert "Re-encrypted 1 value." in out
    assert "visible@example.com" not in out and OLD not in out and NEW not in out


def test_rotate_command_refuses_short_key(db, settings):
    from django.core.management.base import CommandError

    settings.CLOUD_MASTER_KEY = "short"
    with pytest.raises(CommandError, match="at least 16"):
        call_command("rotate_master_key")


def test_rotation_reencrypts_every_readable_row_and_lists_the_unreadable_ones(db, settings, capsys):
    from django.core.management.base import CommandError

    settings.CLOUD_MASTER_KEY = OLD
    good = [make_attempt(f"good{i}@example.com") for i in range(4)]
    bad = make_attempt("bad@example.com")
    # A value sealed under a key nobody has any more (or damaged): it can never be read again.
    CheckoutAttempt.objects.filter(pk=bad.pk).update(
        recovery_email_encrypted=Keyring("lost-master-key-cccccccccccccccc").encrypt("x", "aad"))
    settings.CLOUD_MASTER_KEY, settings.CLOUD_MASTER_KEY_PREVIOUS = NEW, [OLD]

    with pytest.raises(CommandError) as failed:
        call_command("rotate_master_key", "--batch-size", "2")
    out = capsys.readouterr().out
    line = f"billing_console.CheckoutAttempt {bad.pk} recovery_email_encrypted"
    assert line in out and line in str(failed.value) and "1 value could not be read" in str(failed.value)
    assert "Re-encrypted 4 values." in out

    settings.CLOUD_MASTER_KEY_PREVIOUS = []
    for i, attempt in enumerate(good):
        assert CheckoutAttempt.objects.get(pk=attempt.pk).recovery_email == f"good{i}@example.com"

    # A rerun finds nothing left to rotate but the same unreadable row, and still says so.
    settings.CLOUD_MASTER_KEY_PREVIOUS = [OLD]
    result = vault_rotate(batch_size=2)
    assert sum(result.totals.values()) == 0
    assert result.unreadable == [("billing_console.CheckoutAttempt", str(bad.pk), "recovery_email_encrypted")]
