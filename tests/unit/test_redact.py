"""The one scrubber for texts that leave the process (issue 10 §8)."""

from __future__ import annotations

from hlcore.redact import REDACTED, scrub


def test_signed_request_lines_lose_their_signature_and_keys() -> None:
    digest = "ab" * 32
    line = (f"POST /fapi/v1/order?symbol=BTCUSDT&timestamp=1&signature={digest} "
            f'{{"apiKey": "AKIA123", "secret":"s3cr3t"}} X-MBX-APIKEY: hdr-key')
    clean = scrub(line)
    assert clean is not None
    for secret in (digest, "AKIA123", "s3cr3t", "hdr-key"):
        assert secret not in clean
    assert "POST /fapi/v1/order?symbol=BTCUSDT&timestamp=1" in clean and clean.count(REDACTED) == 4


def test_bare_digests_and_known_values_go_but_tx_hashes_stay() -> None:
    tx = "0x" + "cd" * 32  # a Hyperliquid transaction hash is public and useful
    clean = scrub(f"tx {tx} sig {'ef' * 32} key MYKEY", "MYKEY")
    assert clean == f"tx {tx} sig {REDACTED} key {REDACTED}"
    assert scrub(None) is None
