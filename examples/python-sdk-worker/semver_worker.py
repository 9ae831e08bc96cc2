"""demo.semver.bump: bumps a version number with semver 3, written with the workerhost Python SDK.

semver is a third-party package the host does not have; this worker's venv pins it (requirements.txt).
semver 3 is required: `semver.Version` and `optional_minor_and_patch` do not exist in semver 2, which
the legacy worker next door (../python-sdk-worker-legacy) is pinned to.

Run by hand (after `workerhost setup`, which makes ./venv):
    echo '{"id":"1","type":"demo.semver.bump","params":{"version":"1.2.3","part":"minor"}}' \
      | venv/bin/python -c "from semver_worker import handle; handle()"
"""
import semver

from workerhost_sdk import FatalError, worker

PARTS = ("major", "minor", "patch", "prerelease", "build")


@worker
def handle(params, task):
    text = params.get("version")
    if not isinstance(text, str):
        raise FatalError("params.version (a string) is required", error_type="InvalidParams")
    part = params.get("part", "patch")
    if part not in PARTS:
        raise FatalError("params.part must be one of %s" % ", ".join(PARTS), error_type="InvalidParams")
    print("bumping the %s part of %s for task %s (attempt %s)" % (part, text, task.id, task.attempt))
    try:
        version = semver.Version.parse(text, optional_minor_and_patch=True)
    except ValueError as e:
        raise FatalError(str(e), error_type="InvalidVersion")
    task.progress(50, "parsed")
    bumped = getattr(version, "bump_" + part)()
    task.log("bumped %s to %s" % (version, bumped))
    return {"from": str(version), "version": str(bumped), "part": part, "semver": semver.__version__}


if __name__ == "__main__":
    handle()
