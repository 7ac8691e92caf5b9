"""The package as installed: a wheel built from the tree ships the device files (top-level devices/, installed as
wxy_hw/devices), a checkout finds them at the top level; setup.sh and pyproject agree."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from wxy_hw.studies.zoo import REPRODUCE_SHELF

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_unpacked_on_its_own_finds_the_shipped_devices(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the work tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("wxy_hw", "devices", "zoo"):  # devices/ and zoo/ (top level) go into the wheel as wxy_hw/...
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("wxy_hw-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "devices").rglob("*.toml")}
        assert shipped >= {"devices/reram.toml", "devices/technology/cmos22.toml"}
        assert {f"wxy_hw/{p}" for p in shipped} <= set(names)  # every shipped file, at the installed location
        # the zoo's files, not the lock file a zoo update leaves beside them (.index.lock: never shipped)
        zoo = {f"wxy_hw/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "zoo").iterdir()
               if p.is_file() and not p.name.startswith(".")}
        assert "wxy_hw/zoo/index.toml" in zoo and zoo <= set(names)  # the zoo's models, configs, logs and index
        # its reproduce/ shelf (the reproduction's teachers and other methods) stays in the checkout
        assert not [n for n in names if n.startswith(f"wxy_hw/zoo/{REPRODUCE_SHELF}/")]
        packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "wxy_hw").rglob("__init__.py")}
        missing = sorted(p.replace("/", ".") for p in packages if f"{p}/__init__.py" not in names)
        assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}: add them"
        entry = [n for n in names if n.endswith("entry_points.txt")]
        assert entry and "wxy-hw = wxy_hw.cli.__main__:main" in z.read(entry[0]).decode()
        z.extractall(tmp_path / "site")
    probe = ("import wxy_hw, wxy_hw.hardware as h, wxy_hw.hardware.spec as s; "
             "print(wxy_hw.__file__); print(s.shipped_dir()); print(s.available_devices()); "
             "print(h.load_technology('cmos22') is not None); "
             "import wxy_hw.studies.zoo as z; print(z.zoo_dir(), len(z.read_index()))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    where, shipped, devices, tech, zoo = res.stdout.splitlines()[-5:]
    assert where.startswith(str(tmp_path / "site"))  # the unpacked wheel, not the work tree
    assert shipped == str(tmp_path / "site" / "wxy_hw" / "devices")  # the package's copy, not the checkout's
    assert "reram" in devices and "pcm" in devices and tech == "True"
    assert zoo == f"{tmp_path / 'site' / 'wxy_hw' / 'zoo'} {len(list((ROOT / 'zoo').glob('*.pt')))}"  # found, all listed


def test_torch_pin_agrees_with_setup_script():
    pin = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    script = re.search(r"^TORCH_VERSION=(\S+)", (ROOT / "scripts" / "setup.sh").read_text(), re.M).group(1)
    assert pin == script


def test_setup_stops_with_one_message_without_apt(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with bash and coreutils but no apt-get and no dpkg
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id", "printf", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    res = subprocess.run([str(bin_dir / "bash"), str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True,
                         timeout=60, env={"PATH": str(bin_dir), "VENV": str(tmp_path / "venv")})
    assert res.returncode == 1
    assert "apt-get is not available" in res.stderr and "Install by hand" in res.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.slow
def test_a_script_beside_the_clone_imports_the_package_not_the_clone(tmp_path):
    """`git clone` names the folder wxy_hw; a script in the folder above must still get the package (issue 29)."""
    (tmp_path / "wxy_hw").symlink_to(ROOT)  # the clone, as the folder above it sees it (no __init__.py there)
    script = tmp_path / "mine.py"
    script.write_text("import wxy_hw\nfrom wxy_hw.hardware.spec import load_device\n"
                      "print(wxy_hw.__file__)\nprint(load_device('reram').name)\n")
    for cmd in ([sys.executable, str(script)], [sys.executable, "-c", script.read_text()]):
        res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert res.returncode == 0, res.stderr[-2000:]
        where, device = res.stdout.splitlines()[-2:]
        assert where == str(ROOT / "wxy_hw" / "__init__.py") and device == "reram", res.stdout


def test_a_checkout_finds_the_top_level_devices_and_wxy_devices_still_wins(tmp_path, monkeypatch):
    """Shipped files live in devices/ beside wxy_hw/ (no copy inside the package); $WXY_DEVICES replaces the
    named devices (technology files stay the shipped ones); a path loads from anywhere."""
    from wxy_hw.hardware import load_technology, spec

    assert spec.shipped_dir() == ROOT / "devices" and not (ROOT / "wxy_hw" / "devices").exists()
    with pytest.raises(spec.DeviceSpecError, match=re.escape(str(ROOT / "devices" / "technology" / "nope.toml"))):
        load_technology("nope")  # technology files are looked up beside the devices, through shipped_dir()
    assert {"reram", "pcm", "ideal"} <= set(spec.available_devices())
    mine = tmp_path / "my_devices"
    mine.mkdir()
    (mine / "my_chip.toml").write_text((ROOT / "devices" / "reram.toml").read_text())
    monkeypatch.setenv("WXY_DEVICES", str(mine))
    assert spec.devices_dir() == mine and spec.available_devices() == ["my_chip"]
    assert spec.load_device("my_chip").path == str(mine / "my_chip.toml")
    with pytest.raises(spec.DeviceSpecError, match=r"unknown device 'reram'.*Named devices: my_chip"):
        spec.load_device("reram")
    assert spec.load_device(ROOT / "devices" / "pcm.toml").name == "pcm"  # by path, whatever $WXY_DEVICES says
    assert spec.shipped_dir() == ROOT / "devices" and load_technology("cmos130")
