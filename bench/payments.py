"""Benchmarks of the payment path, each as a ratio to a baseline in the same run.

    .venv/bin/python bench/payments.py [--rounds N]

QR rendering is compared with a bare `qrcode` call on the same contents, and
notification handling with the bare cryptography it cannot avoid (one RSA
signature check and one AES-GCM decryption).
"""

import argparse
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import qrcode
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from payments import qr, wechatpay  # noqa: E402
from peers.devkeys import ensure_dev_keys  # noqa: E402
from tests.hub.notices import wechat_notification  # noqa: E402


def median_seconds(rounds, work):
    """Return the median seconds per call of `work` over `rounds` batches."""
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        calls = work()
        timings.append((time.perf_counter() - started) / calls)
    return statistics.median(timings)


def code_urls(count, salt):
    return [f"weixin://wxpay/bizpayurl?pr={salt}{index:08d}" for index in range(count)]


def bench_qr(rounds, per_round=50):
    def bare():
        for content in code_urls(per_round, f"b{time.perf_counter_ns()}"):
            image = qrcode.make(
                content, error_correction=qrcode.constants.ERROR_CORRECT_M
            )
            image.save(io.BytesIO(), format="PNG")
        return per_round

    def project():
        for content in code_urls(per_round, f"p{time.perf_counter_ns()}"):
            qr.render_png(content)
        return per_round

    cached_content = code_urls(1, "cached")[0]
    qr.render_png(cached_content)

    def cached():
        for _ in range(per_round):
            qr.render_png(cached_content)
        return per_round

    return bare, project, cached


def bench_notifications(rounds, keys, per_round=200):
    config = wechatpay.WechatPayConfig.from_keys_dir(
        keys.directory, base_url="http://127.0.0.1:9", notify_url="http://127.0.0.1:9/n"
    )
    samples = [
        wechat_notification(keys, f"LB{index:018d}", 1000 + index)
        for index in range(per_round)
    ]
    public_key = serialization.load_pem_public_key(
        keys.platform_public_key_path.read_bytes()
    )
    aead = AESGCM(keys.apiv3_key.encode())

    def crypto_only():
        import json

        for headers, body in samples:
            message = (
                f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode()
                + body
                + b"\n"
            )
            public_key.verify(
                base64.b64decode(headers["Wechatpay-Signature"]),
                message,
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            resource = json.loads(body)["resource"]
            aead.decrypt(
                resource["nonce"].encode(),
                base64.b64decode(resource["ciphertext"]),
                resource["associated_data"].encode(),
            )
        return per_round

    def parse():
        for headers, body in samples:
            wechatpay.parse_notification(config, headers, body)
        return per_round

    return crypto_only, parse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="batches per measure")
    args = parser.parse_args(argv)

    bare, project, cached = bench_qr(args.rounds)
    bare_s = median_seconds(args.rounds, bare)
    project_s = median_seconds(args.rounds, project)
    cached_s = median_seconds(args.rounds, cached)
    print("QR PNG rendering, median per code")
    rows = [
        ("bare qrcode.make + PNG", bare_s),
        ("payments.qr.render_png", project_s),
        ("render_png, cached", cached_s),
    ]
    for label, seconds in rows:
        print(f"  {label:<24} {seconds * 1e6:10.1f} us   {seconds / bare_s:.4f}x")
    with tempfile.TemporaryDirectory() as folder:
        keys = ensure_dev_keys(Path(folder))
        crypto_only, parse = bench_notifications(args.rounds, keys)
        crypto_s = median_seconds(args.rounds, crypto_only)
        parse_s = median_seconds(args.rounds, parse)
    print("WeChat Pay notification checks, median per notification")
    print(f"  RSA verify + AES-GCM only  {crypto_s * 1e6:8.1f} us   1.00x")
    ratio = parse_s / crypto_s
    per_second = 1 / parse_s
    print(f"  parse_notification         {parse_s * 1e6:8.1f} us   {ratio:.2f}x")
    print(f"  that is {per_second:,.0f} notifications checked per second on one core")


if __name__ == "__main__":
    main()
