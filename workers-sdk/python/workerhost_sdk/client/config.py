"""The task manager's settings from the host's own YAML file, `${VAR}` rules as section 2 of the spec:
`${VAR}`, `${VAR:-default}` and `${file:/path}` expand in string values after parsing; an unset variable
without a default is an error. Reading YAML needs PyYAML (the `[yaml]` extra); `Client(settings)` does not."""

import os
import re

from .errors import ClientError

_REF = re.compile(r"\$\{([^}]*)\}")


def expand(value, where, env=None):
    env = os.environ if env is None else env
    if isinstance(value, dict):
        return {k: expand(v, f"{where}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def one(m):
        ref = m.group(1)
        if ref.startswith("file:"):
            path = ref[5:]
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except OSError as e:
                raise ClientError(f"{where}: ${{{ref}}}: cannot read {path}: {e}") from None
            return text[:-1] if text.endswith("\n") else text
        name, sep, default = ref.partition(":-")
        if name in env:
            return env[name]
        if sep:
            return default
        raise ClientError(f"{where}: environment variable {name} is not set (and ${{{ref}}} has no default)")

    return _REF.sub(one, value)


def load(path):
    """`(task_manager settings, config folder)` of the file at `path`."""
    try:
        import yaml
    except ImportError:
        raise ClientError(
            "Client.from_config reads YAML with PyYAML: pip install 'workerhost-sdk[yaml]' "
            "(or pass the task_manager settings to Client(...) directly)") from None
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ClientError(f"{path}: cannot read the config: {e}") from None
    except yaml.YAMLError as e:
        raise ClientError(f"{path}: not valid YAML: {e}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ClientError(f"{path}: the config must be a mapping")
    tm = doc.get("task_manager") or {}
    if not isinstance(tm, dict):
        raise ClientError(f"{path}: task_manager must be a mapping")
    return expand(tm, f"{path}: task_manager"), os.path.dirname(os.path.abspath(path))
