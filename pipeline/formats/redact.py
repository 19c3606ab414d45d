"""What a published config may show: every setting, no credential (by key name or by the look of the value)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "<redacted>"

# A key holding one of these anywhere is a credential: "client_secret", "db_password", "Authorization".
_ALWAYS = {
    "secret",
    "password",
    "passwd",
    "passphrase",
    "credential",
    "credentials",
    "cookie",
    "apikey",
    "authorization",
}
# These name a credential only as the key's last word: "api_key", "hf_token", "basic_auth" are secrets,
# while "max_tokens", "stop_token_ids" and "key_id" are settings.
_LAST = {"key", "token", "auth"}
# Tokenizer tokens and token counts end in "token" too, and are settings.
_NOT_A_CREDENTIAL_TOKEN = {
    "eos",
    "bos",
    "pad",
    "unk",
    "sep",
    "cls",
    "mask",
    "stop",
    "special",
    "max",
    "min",
    "num",
}

# Values that are credentials whatever their key, by the prefixes their issuers use.
_SECRET_VALUE = re.compile(
    r"\bsk-[A-Za-z0-9_-]{16,}"  # OpenAI, Anthropic and compatible servers
    r"|\bhf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}"  # GitHub
    r"|\bgsk_[A-Za-z0-9]{30,}"  # Groq
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bAIza[0-9A-Za-z_-]{35}"  # Google
    r"|\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\."  # a JWT
    r"|\bBearer\s+\S{8,}",
)


def _words(key: str) -> list[str]:
    """
    >>> _words("maxStepTokens"), _words("HF-Token"), _words("api_key_env")
    (['max', 'step', 'tokens'], ['hf', 'token'], ['api', 'key', 'env'])
    """
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [w for w in re.split(r"[^a-z0-9]+", snake.lower()) if w]


def is_secret_key(key: str) -> bool:
    """Whether a config key names a credential; `*_env` keys name the variable that holds one, so they stay.

    >>> [k for k in ("api_key", "token", "hf_token", "password", "Authorization", "extra_headers") if is_secret_key(k)]
    ['api_key', 'token', 'hf_token', 'password', 'Authorization']
    >>> [k for k in ("max_tokens", "max_step_tokens", "stop_token_ids", "eos_token", "api_key_env", "keep") if is_secret_key(k)]
    []
    """
    words = _words(key)
    if not words or words[-1] == "env":
        return False
    if _ALWAYS.intersection(words):
        return True
    last = words[-1]
    if last == "token" and len(words) > 1 and words[-2] in _NOT_A_CREDENTIAL_TOKEN:
        return False
    return last in _LAST


def looks_like_secret(value: str) -> bool:
    """
    >>> looks_like_secret("sk-proj-abcdefghijklmnop1234"), looks_like_secret("hf_" + "a" * 34)
    (True, True)
    >>> looks_like_secret("HuggingFaceTB/SmolLM2-135M-Instruct"), looks_like_secret("sk-short")
    (False, False)
    """
    return bool(_SECRET_VALUE.search(value))


def scrub_url(url: str) -> str:
    """A URL without its user:password and without the values of query parameters that carry credentials.

    >>> scrub_url("https://user:pw@host:8000/v1?api_key=x&region=eu")
    'https://host:8000/v1?api_key=<redacted>&region=eu'
    """
    parts = urlsplit(url)
    parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    query = parse_qsl(parts.query, keep_blank_values=True)
    # Rebuilt only when it holds a credential, so an ordinary query string stays byte for byte.
    if any(is_secret_key(k) for k, _ in query):
        query = [(k, REDACTED if is_secret_key(k) else v) for k, v in query]
        parts = parts._replace(query=urlencode(query, safe="<>"))
    return urlunsplit(parts)


def public_config(value, key: str = ""):
    """The config with every credential replaced by <redacted>; settings are kept as they are.

    >>> public_config({"base_url": "http://u:p@h/v1", "api_key_env": "K", "extra_body": {"api_key": "x"}})
    {'base_url': 'http://h/v1', 'api_key_env': 'K', 'extra_body': {'api_key': '<redacted>'}}
    >>> public_config({"max_tokens": 128, "headers": {"X-Org": "sk-abcdefghijklmnopqrstu"}})
    {'max_tokens': 128, 'headers': {'X-Org': '<redacted>'}}
    """
    if is_secret_key(key) and value is not None:
        return REDACTED
    if isinstance(value, dict):
        return {k: public_config(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [public_config(v, key) for v in value]
    if isinstance(value, str) and looks_like_secret(value):
        return REDACTED
    if isinstance(value, str) and "://" in value:
        return scrub_url(value)
    return value
