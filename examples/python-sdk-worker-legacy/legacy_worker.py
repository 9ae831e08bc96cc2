"""demo.semver.bump-legacy: the same job for an older code base pinned to semver 2.13.0.

Its code uses semver 2's module-level API (`semver.bump_minor("1.2.3")`, `semver.parse`), which semver 3
deprecates for removal, while ../python-sdk-worker needs semver 3. One shared environment cannot satisfy
both pins; under workerhost each worker has its own venv and both run side by side under one host.
The result reports the semver version the worker sees.

Run by hand (after `workerhost setup`, which makes ./venv):
    echo '{"id":"1","type":"demo.semver.bump-legacy","params":{"version":"1.2.3","part":"minor"}}' \
      | venv/bin/python -c "from legacy_worker import handle; handle()"
"""
import semver

from workerhost_sdk import FatalError, worker

BUMPS = {
    "major": semver.bump_major,
    "minor": semver.bump_minor,
    "patch": semver.bump_patch,
    "prerelease": semver.bump_prerelease,
    "build": semver.bump_build,
}


@worker
def handle(params, task):
    text = params.get("version")
    if not isinstance(text, str):
        raise FatalError("params.version (a string) is required", error_type="InvalidParams")
    part = params.get("part", "patch")
    if part not in BUMPS:
        raise FatalError("params.part must be one of %s" % ", ".join(BUMPS), error_type="InvalidParams")
    try:
        parsed = semver.parse(text)
    except ValueError as e:
        raise FatalError(str(e), error_type="InvalidVersion")
    print("legacy bump of %s (%s) for task %s" % (text, part, task.id))
    return {
        "from": text,
        "version": BUMPS[part](text),
        "part": part,
        "parsed": dict(parsed),
        "semver": semver.__version__,
    }


if __name__ == "__main__":
    handle()
