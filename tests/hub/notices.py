"""Payment notifications built the way WeChat Pay builds them, for the tests.

They are signed with the sandbox's platform key from the development keys, so
the hub accepts them exactly as it accepts the sandbox's own.
"""

import base64
import json
import secrets
import time
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def wechat_notification(
    keys, out_trade_no, amount_fen, transaction_id=None, signing_key_path=None
):
    """Return (headers, body) of a TRANSACTION.SUCCESS notification."""
    transaction = {
        "appid": keys.wechatpay_appid,
        "mchid": keys.mchid,
        "out_trade_no": out_trade_no,
        "transaction_id": transaction_id or f"4200{secrets.randbelow(10**20):020d}",
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "success_time": time.strftime(
            "%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(time.time() + 8 * 3600)
        ),
        "amount": {
            "total": amount_fen,
            "payer_total": amount_fen,
            "currency": "CNY",
            "payer_currency": "CNY",
        },
        "payer": {"openid": "o-test-payer"},
    }
    nonce = secrets.token_hex(6)
    sealed = AESGCM(keys.apiv3_key.encode()).encrypt(
        nonce.encode(), json.dumps(transaction).encode(), b"transaction"
    )
    body = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "create_time": transaction["success_time"],
            "event_type": "TRANSACTION.SUCCESS",
            "resource_type": "encrypt-resource",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(sealed).decode(),
                "associated_data": "transaction",
                "nonce": nonce,
            },
        }
    ).encode()
    return sign_notification(keys, body, signing_key_path), body


def sign_notification(keys, body, signing_key_path=None):
    path = signing_key_path or keys.platform_private_key_path
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16)
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": base64.b64encode(signature).decode(),
        "Wechatpay-Serial": keys.platform_serial,
    }
