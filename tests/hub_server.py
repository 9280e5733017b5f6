"""A tiny Hugging Face Hub-compatible HTTP server for the tests (stdlib only).

Adopted from the team's shared ``mini_hub.py``; ``tests/conftest.py`` starts one per pytest
process and points huggingface_hub at it, so Hub code is tested against real HTTP round trips.

It speaks just enough of the Hub's HTTP API for huggingface_hub (checked against
2.4.0) to do real round trips on loopback:

    create_repo / delete_repo / repo_info / model_info / repo_exists / file_exists
    upload_file / upload_folder / create_commit / push_to_hub (PyTorchModelHubMixin)
    hf_hub_download / snapshot_download / list_repo_files / list_repo_tree /
    get_paths_info / list_repo_refs / list_repo_commits / create_branch / create_tag / whoami

Uploads: /preupload answers "regular" for every file by default, so file bytes travel
base64-encoded inside the /commit ndjson payload -- no LFS, no Xet, works with hf_xet
installed. With lfs_threshold=N, files >= N bytes are "lfs": that path needs the
client to run with HF_HUB_DISABLE_XET=1 (then huggingface_hub uses the legacy git-LFS
batch API, which this server implements: basic transfer + verify). With hf_xet
enabled an "lfs" answer makes the client speak the Xet CAS protocol, which this
server does NOT implement.

Downloads: HEAD/GET /{repo}/resolve/{rev}/{path} with X-Repo-Commit, ETag (git blob
sha1; for LFS files X-Linked-Etag=sha256 + X-Linked-Size), Content-Length, Range;
errors carry X-Error-Code (RepoNotFound / RevisionNotFound / EntryNotFound) so the
client raises its specific exception classes.

State (repos, refs, commits) lives in memory; blobs live under data_dir/blobs.

Usage in tests:

    with MiniHub() as hub:                 # binds 127.0.0.1 on a free port
        hub.endpoint                       # "http://127.0.0.1:PORT"
        hub.seed("org/name", {"model.safetensors": b"..."})   # optional, no HTTP
        ... HfApi(endpoint=hub.endpoint) / hf_hub_download(..., endpoint=hub.endpoint)
        hub.requests                       # [(method, path), ...] seen so far

CLI: python tests/hub_server.py [--host 127.0.0.1] [--port 0] [--data-dir DIR] [--token T]
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["MiniHub"]

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_VERBS = {"preupload", "commit", "revision", "tree", "paths-info", "refs", "branch", "tag", "commits"}
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class _Repo:
    def __init__(self, repo_type: str, repo_id: str, private: bool):
        self.repo_type, self.repo_id, self.private = repo_type, repo_id, private
        self.created_at = _now()
        self.refs: dict[str, str] = {}  # branch (incl. refs/pr/N) -> commit sha
        self.tags: dict[str, str] = {}
        self.commits: dict[str, dict] = {}  # sha -> {parent, files, title, message, date}
        self.n_prs = 0


class MiniHub:
    def __init__(
        self,
        data_dir: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        lfs_threshold: int | None = None,
        user: str = "test-user",
    ):
        """token: if set, writes (and reads of private repos) need `Authorization: Bearer <token>`.
        lfs_threshold: files of at least this many bytes are stored as LFS (see module doc)."""
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="mini-hub-")
        os.makedirs(os.path.join(self.data_dir, "blobs"), exist_ok=True)
        self.token, self.lfs_threshold, self.user = token, lfs_threshold, user
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.RLock()
        self._counter = 0
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self.endpoint = f"http://{self.host}:{self.port}"
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MiniHub:
        self._thread = threading.Thread(target=self._server.serve_forever, name="mini-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> MiniHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------------ storage
    def _blob_path(self, sha256: str) -> str:
        return os.path.join(self.data_dir, "blobs", sha256)

    def _put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        p = self._blob_path(sha)
        if not os.path.exists(p):
            tmp = f"{p}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        return sha

    def _entry(self, data: bytes, lfs: bool) -> dict:
        return {"sha256": self._put_blob(data), "size": len(data), "git_oid": _git_oid(data), "lfs": lfs}

    def _is_lfs(self, size: int) -> bool:
        return self.lfs_threshold is not None and size >= self.lfs_threshold and size > 0

    # ------------------------------------------------------------------ model ops (no HTTP)
    def _get_repo(self, repo_type: str, repo_id: str, auth: str | None = None) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and self.token is not None and auth != self.token):
            raise HubError(404, "RepoNotFound", f"Repository not found: {repo_id}")
        return repo

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> _Repo:
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, None, f"You already created this {repo_type} repo: {repo_id}")
            repo = _Repo(repo_type, repo_id, private)
            self.repos[(repo_type, repo_id)] = repo
            self._new_commit(
                repo, "main", None, {".gitattributes": self._entry(_GITATTRIBUTES, False)}, "initial commit", ""
            )
            return repo

    def _new_commit(self, repo: _Repo, branch: str, parent: str | None, files: dict, title: str, message: str) -> str:
        self._counter += 1
        sha = hashlib.sha1(
            json.dumps(
                [
                    repo.repo_id,
                    branch,
                    parent,
                    sorted((k, v["git_oid"]) for k, v in files.items()),
                    title,
                    self._counter,
                    time.time(),
                ]
            ).encode()
        ).hexdigest()
        repo.commits[sha] = {"parent": parent, "files": files, "title": title, "message": message, "date": _now()}
        repo.refs[branch] = sha
        return sha

    def _resolve(self, repo: _Repo, rev: str) -> str:
        if rev in repo.refs:
            return repo.refs[rev]
        if rev in repo.tags:
            return repo.tags[rev]
        if _SHA1.match(rev) and rev in repo.commits:
            return rev
        if len(rev) >= 7 and re.fullmatch(r"[0-9a-f]+", rev):
            hits = [c for c in repo.commits if c.startswith(rev)]
            if len(hits) == 1:
                return hits[0]
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")

    def seed(
        self,
        repo_id: str,
        files: dict[str, bytes | str],
        repo_type: str = "model",
        revision: str = "main",
        message: str = "seed",
        private: bool = False,
    ) -> str:
        """Create the repo if needed and commit `files` ({path_in_repo: bytes or local path}). Returns the sha."""
        with self._lock:
            if (repo_type, repo_id) not in self.repos:
                self.create_repo(repo_id, repo_type, private)
            repo = self.repos[(repo_type, repo_id)]
            base = repo.refs.get(revision) or repo.refs["main"]
            tree = dict(repo.commits[base]["files"])
            for path, content in files.items():
                if isinstance(content, str):
                    with open(content, "rb") as f:
                        content = f.read()
                tree[path] = self._entry(content, self._is_lfs(len(content)))
            return self._new_commit(repo, revision, base, tree, message, "")

    # ------------------------------------------------------------------ JSON views
    def _url(self, repo: _Repo) -> str:
        return f"{self.endpoint}/{_PREFIX[repo.repo_type]}{repo.repo_id}"

    def _tree_item(self, path: str, e: dict) -> dict:
        item = {"type": "file", "oid": e["git_oid"], "size": e["size"], "path": path}
        if e["lfs"]:
            item["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": 134}
        return item

    def _info(self, repo: _Repo, sha: str, blobs: bool) -> dict:
        c = repo.commits[sha]
        sib = []
        for p, e in sorted(c["files"].items()):
            s = {"rfilename": p}
            if blobs:
                s.update(size=e["size"], blobId=e["git_oid"])
                if e["lfs"]:
                    s["lfs"] = {"sha256": e["sha256"], "size": e["size"], "pointerSize": 134}
            sib.append(s)
        ns = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
        info = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": ns,
            "sha": sha,
            "lastModified": c["date"],
            "createdAt": repo.created_at,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": sib,
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        return info


class _Handler(BaseHTTPRequestHandler):
    hub: MiniHub
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    disable_nagle_algorithm = True  # else ~40 ms per request (headers/body written separately)
    timeout = 60
    server_version = "mini-hub/0.1"

    def log_message(self, fmt, *args):  # quiet; set MINI_HUB_LOG=1 to see requests
        if os.environ.get("MINI_HUB_LOG"):
            sys.stderr.write("mini-hub: " + (fmt % args) + "\n")

    # -------------------------------------------------------------- plumbing
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict | None = None,
        ctype: str = "application/json",
        head_length: int | None = None,
    ):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(head_length if head_length is not None else len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _auth(self) -> str | None:
        a = self.headers.get("Authorization") or ""
        return a[7:] if a.lower().startswith("bearer ") else None

    def _require_write(self):
        if self.hub.token is not None and self._auth() != self.hub.token:
            raise HubError(401, None, "Invalid credentials in Authorization header")

    def _dispatch(self):
        hub = self.hub
        with hub._lock:
            hub.requests.append((self.command, self.path))
        body = self._read_body() if self.command in ("POST", "PUT", "DELETE", "PATCH") else b""
        u = urlsplit(self.path)
        self.query = parse_qs(u.query)
        try:
            self._route(u.path, body)
        except HubError as e:
            h = dict(e.headers)
            if e.code:
                h["X-Error-Code"] = e.code
            h["X-Error-Message"] = e.message
            self._json({"error": e.message}, e.status, h)
        except Exception as e:  # noqa: BLE001 -- report as 500 rather than dropping the connection
            self._json({"error": f"mini-hub internal error: {type(e).__name__}: {e}"}, 500)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # -------------------------------------------------------------- routing
    def _route(self, path: str, body: bytes):
        m = self.command
        if path == "/api/whoami-v2" and m == "GET":
            if self.hub.token is not None and self._auth() != self.hub.token:
                raise HubError(401, None, "Invalid credentials in Authorization header")
            return self._json(
                {
                    "type": "user",
                    "name": self.hub.user,
                    "fullname": self.hub.user,
                    "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
                }
            )
        if path == "/api/repos/create" and m == "POST":
            return self._create_repo(json.loads(body or b"{}"))
        if path == "/api/agent-harnesses" and m == "GET":  # user-agent probe when telemetry is on
            return self._json({"standardEnvVars": [], "harnesses": {}})
        if path == "/api/validate-yaml" and m == "POST":  # README.md model-card check
            return self._json({"errors": [], "warnings": []})
        if path == "/api/repos/delete" and m == "DELETE":
            return self._delete_repo(json.loads(body or b"{}"))
        if path.startswith("/api/"):
            segs = [unquote(s) for s in path[5:].split("/")]
            if segs and segs[0] in _TYPES and len(segs) >= 2:
                rtype, rest = _TYPES[segs[0]], segs[1:]
                if len(rest) >= 2 and rest[1] not in _API_VERBS:
                    repo_id, rest = f"{rest[0]}/{rest[1]}", rest[2:]
                else:
                    repo_id, rest = rest[0], rest[1:]
                return self._api_repo(m, rtype, repo_id, rest, body)
        if path.startswith("/__lfs__/"):
            return self._lfs_object(m, path, body)
        if path.endswith(".git/info/lfs/objects/batch") and m == "POST":
            rtype, repo_id = self._split_repo(path[1 : -len(".git/info/lfs/objects/batch")])
            return self._lfs_batch(rtype, repo_id, json.loads(body or b"{}"))
        r = re.match(r"^/(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", path)
        if r and m in ("GET", "HEAD"):
            rtype, repo_id = self._split_repo(r["repo"])
            return self._resolve_file(rtype, unquote(repo_id), unquote(r["rev"]), unquote(r["file"]))
        raise HubError(404, None, f"mini-hub: no route for {m} {path}")

    @staticmethod
    def _split_repo(s: str) -> tuple[str, str]:
        first = s.split("/", 1)[0]
        if first in ("datasets", "spaces") and "/" in s:
            return _TYPES[first], s.split("/", 1)[1]
        return "model", s

    # -------------------------------------------------------------- repo CRUD
    def _create_repo(self, p: dict):
        self._require_write()
        rtype = p.get("type") or "model"
        repo_id = f"{p.get('organization') or self.hub.user}/{p['name']}"
        private = bool(p.get("private")) or p.get("visibility") == "private"
        try:
            repo = self.hub.create_repo(repo_id, rtype, private)
        except HubError as e:
            if e.status != 409:
                raise
            # the Hub answers 409 + {"url": ...}; create_repo(exist_ok=True) reads r.json()["url"]
            repo = self.hub.repos[(rtype, repo_id)]
            return self._json({"error": e.message, "url": self.hub._url(repo)}, 409, {"X-Error-Message": e.message})
        self._json({"url": self.hub._url(repo), "name": repo_id, "id": repo_id})

    def _delete_repo(self, p: dict):
        self._require_write()
        rtype = p.get("type") or "model"
        repo_id = f"{p.get('organization') or self.hub.user}/{p['name']}"
        with self.hub._lock:
            self.hub._get_repo(rtype, repo_id)
            del self.hub.repos[(rtype, repo_id)]
        self._json({})

    def _api_repo(self, m: str, rtype: str, repo_id: str, rest: list[str], body: bytes):
        hub = self.hub
        with hub._lock:
            repo = hub._get_repo(rtype, repo_id, self._auth())
            verb = rest[0] if rest else None
            blobs = self.query.get("blobs", ["false"])[0].lower() == "true"
            if verb is None and m == "GET":
                return self._json(hub._info(repo, repo.refs["main"], blobs))
            if verb == "revision" and m == "GET":
                return self._json(hub._info(repo, hub._resolve(repo, rest[1]), blobs))
            if verb == "tree" and m == "GET":
                return self._tree(repo, rest[1], "/".join(rest[2:]).strip("/"))
            if verb == "paths-info" and m == "POST":
                return self._paths_info(repo, rest[1], body)
            if verb == "refs" and m == "GET":
                br = [
                    {"name": k, "ref": f"refs/heads/{k}", "targetCommit": v}
                    for k, v in repo.refs.items()
                    if not k.startswith("refs/pr/")
                ]
                tg = [{"name": k, "ref": f"refs/tags/{k}", "targetCommit": v} for k, v in repo.tags.items()]
                out = {"branches": br, "tags": tg, "converts": []}
                if self.query.get("include_prs", ["0"])[0] in ("1", "true", "True"):
                    out["pullRequests"] = [
                        {"name": k, "ref": k, "targetCommit": v}
                        for k, v in repo.refs.items()
                        if k.startswith("refs/pr/")
                    ]
                return self._json(out)
            if verb == "commits" and m == "GET":
                sha, out = hub._resolve(repo, rest[1]), []
                while sha:
                    c = repo.commits[sha]
                    out.append(
                        {
                            "id": sha,
                            "title": c["title"],
                            "message": c["message"],
                            "date": c["date"],
                            "authors": [{"user": hub.user}],
                        }
                    )
                    sha = c["parent"]
                return self._json(out)
            if verb == "branch" and m in ("POST", "DELETE"):
                self._require_write()
                name = "/".join(rest[1:])
                if m == "DELETE":
                    if name not in repo.refs or name == "main":
                        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {name}")
                    del repo.refs[name]
                    return self._json({})
                if name in repo.refs:
                    raise HubError(409, None, f"Reference already exists: refs/heads/{name}")
                start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
                repo.refs[name] = hub._resolve(repo, start)
                return self._json({})
            if verb == "tag" and m in ("POST", "DELETE"):
                self._require_write()
                if m == "DELETE":
                    if rest[1] not in repo.tags:
                        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rest[1]}")
                    del repo.tags[rest[1]]
                    return self._json({})
                tag = (json.loads(body or b"{}") or {}).get("tag")
                if tag in repo.tags:
                    raise HubError(409, None, f"Tag already exists: {tag}")
                repo.tags[tag] = hub._resolve(repo, rest[1])
                return self._json({})
            if verb == "preupload" and m == "POST":
                self._require_write()
                return self._preupload(repo, rest[1], json.loads(body or b"{}"))
            if verb == "commit" and m == "POST":
                self._require_write()
                return self._commit(repo, rest[1], body)
        raise HubError(404, None, f"mini-hub: unsupported API call {m} {'/'.join(rest)}")

    def _tree(self, repo: _Repo, rev: str, prefix: str):
        files = repo.commits[self.hub._resolve(repo, rev)]["files"]
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        base = prefix + "/" if prefix else ""
        if prefix and prefix in files:
            raise HubError(404, "EntryNotFound", f"{prefix} is a file, not a folder")
        under = {p: e for p, e in files.items() if p.startswith(base)}
        if prefix and not under:
            raise HubError(404, "EntryNotFound", f"Path not found: {prefix}")
        dirs, out = set(), []
        for p, e in sorted(under.items()):
            rel = p[len(base) :].split("/")
            for i in range(1, len(rel)):
                d = base + "/".join(rel[:i])
                if (recursive or i == 1) and d not in dirs:
                    dirs.add(d)
                    out.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
            if recursive or len(rel) == 1:
                out.append(self.hub._tree_item(p, e))
        self._json(out)

    def _paths_info(self, repo: _Repo, rev: str, body: bytes):
        files = repo.commits[self.hub._resolve(repo, rev)]["files"]
        ctype = self.headers.get("Content-Type") or ""
        if "json" in ctype:
            paths = (json.loads(body or b"{}") or {}).get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        out = []
        for p in paths:
            if p in files:
                out.append(self.hub._tree_item(p, files[p]))
            elif any(f.startswith(p.rstrip("/") + "/") for f in files):
                out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
        self._json(out)

    # -------------------------------------------------------------- upload protocol
    def _preupload(self, repo: _Repo, rev: str, p: dict):
        if not self.query.get("create_pr"):
            sha = self.hub._resolve(repo, rev)
        else:
            sha = repo.refs["main"]
        files = repo.commits[sha]["files"]
        out = []
        for f in p.get("files", []):
            lfs = self.hub._is_lfs(int(f.get("size", 0)))
            e = files.get(f["path"])
            oid = (e["sha256"] if lfs else e["git_oid"]) if e else None
            out.append(
                {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        self._json({"files": out, "commitOid": sha})

    def _commit(self, repo: _Repo, rev: str, body: bytes):
        hub = self.hub
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((x["value"] for x in lines if x.get("key") == "header"), {})
        create_pr = self.query.get("create_pr", ["0"])[0] in ("1", "true")
        if create_pr:
            base = hub._resolve(repo, rev)
            repo.n_prs += 1
            branch = f"refs/pr/{repo.n_prs}"
        else:
            if rev not in repo.refs:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev} (commits go to branches)")
            branch, base = rev, repo.refs[rev]
        parent = header.get("parentCommit")
        if parent and not create_pr and not base.startswith(parent):
            raise HubError(412, None, "A commit has happened since. Please refresh and try again.")
        tree = dict(repo.commits[base]["files"])
        for op in lines:
            k, v = op.get("key"), op.get("value", {})
            if k == "file":
                data = base64.b64decode(v["content"]) if v.get("encoding") == "base64" else v["content"].encode()
                tree[v["path"]] = hub._entry(data, False)
            elif k == "lfsFile":
                oid = v["oid"]
                if not os.path.exists(hub._blob_path(oid)):
                    raise HubError(422, None, f"LFS object {oid} was never uploaded")
                tree[v["path"]] = {
                    "sha256": oid,
                    "size": os.path.getsize(hub._blob_path(oid)),
                    "git_oid": _git_oid(f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\n".encode()),
                    "lfs": True,
                }
            elif k == "deletedFile":
                if v["path"] not in tree:
                    raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {v['path']}")
                del tree[v["path"]]
            elif k == "deletedFolder":
                pre = v["path"].rstrip("/") + "/"
                for p in [p for p in tree if p.startswith(pre)]:
                    del tree[p]
        sha = hub._new_commit(repo, branch, base, tree, header.get("summary", ""), header.get("description", ""))
        url = hub._url(repo)
        self._json(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{url}/commit/{sha}",
                "hookOutput": "",
                "pullRequestUrl": f"{url}/discussions/{repo.n_prs}" if create_pr else None,
            }
        )

    def _lfs_batch(self, rtype: str, repo_id: str, p: dict):
        self._require_write()
        with self.hub._lock:
            self.hub._get_repo(rtype, repo_id, self._auth())
        objs = []
        for o in p.get("objects", []):
            item = {"oid": o["oid"], "size": o["size"]}
            if not os.path.exists(self.hub._blob_path(o["oid"])):
                item["authenticated"] = True
                item["actions"] = {
                    "upload": {"href": f"{self.hub.endpoint}/__lfs__/{o['oid']}"},
                    "verify": {"href": f"{self.hub.endpoint}/__lfs__/verify"},
                }
            objs.append(item)
        self._send(
            200, json.dumps({"transfer": "basic", "objects": objs}).encode(), ctype="application/vnd.git-lfs+json"
        )

    def _lfs_object(self, m: str, path: str, body: bytes):
        name = path[len("/__lfs__/") :]
        if name == "verify" and m == "POST":
            oid = json.loads(body)["oid"]
            if not os.path.exists(self.hub._blob_path(oid)):
                raise HubError(404, None, f"LFS object {oid} not found")
            return self._json({})
        if m == "PUT" and re.fullmatch(r"[0-9a-f]{64}", name):
            if hashlib.sha256(body).hexdigest() != name:
                raise HubError(400, None, "sha256 mismatch")
            self.hub._put_blob(body)
            return self._json({})
        raise HubError(404, None, "no such LFS route")

    # -------------------------------------------------------------- download protocol
    def _resolve_file(self, rtype: str, repo_id: str, rev: str, filename: str):
        hub = self.hub
        with hub._lock:
            repo = hub._get_repo(rtype, repo_id, self._auth())
            sha = hub._resolve(repo, rev)
            e = repo.commits[sha]["files"].get(filename)
        if e is None:
            raise HubError(404, "EntryNotFound", f'{filename} does not exist on "{rev}"', {"X-Repo-Commit": sha})
        h = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes", "ETag": f'"{e["git_oid"]}"'}
        if e["lfs"]:
            h["X-Linked-Etag"] = f'"{e["sha256"]}"'
            h["X-Linked-Size"] = e["size"]
        size, start, end, status = e["size"], 0, e["size"] - 1, 200
        rng = self.headers.get("Range")
        r = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip()) if rng else None
        if r and size > 0 and self.command == "GET":
            start = int(r[1]) if r[1] else max(size - int(r[2] or 0), 0)
            end = min(int(r[2]), size - 1) if (r[1] and r[2]) else size - 1
            if start >= size:
                return self._send(416, b"", {**h, "Content-Range": f"bytes */{size}"})
            status, h["Content-Range"] = 206, f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        for k, v in h.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "GET" and length:
            with open(hub._blob_path(e["sha256"]), "rb") as f:
                f.seek(start)
                left = length
                while left:
                    chunk = f.read(min(1 << 20, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--data-dir")
    ap.add_argument("--token")
    ap.add_argument("--lfs-threshold", type=int)
    a = ap.parse_args(argv)
    hub = MiniHub(a.data_dir, a.host, a.port, a.token, a.lfs_threshold).start()
    print(hub.endpoint, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
