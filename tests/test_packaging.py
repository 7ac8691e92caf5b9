"""The package as installed: a wheel built from the tree ships the device files; setup.sh and pyproject agree."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_unpacked_on_its_own_finds_the_shipped_devices(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the work tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "wxy_hw", src / "wxy_hw", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("wxy_hw-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "wxy_hw/devices/reram.toml" in names and "wxy_hw/devices/technology/cmos22.toml" in names
        entry = [n for n in names if n.endswith("entry_points.txt")]
        assert entry and "wxy-hw = wxy_hw.cli.__main__:main" in z.read(entry[0]).decode()
        z.extractall(tmp_path / "site")
    probe = ("import wxy_hw, wxy_hw.hardware.spec as s, wxy_hw.hardware.chip as c; "
             "print(wxy_hw.__file__); print(s.available_devices()); print(c.load_technology('cmos22') is not None)")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    where, devices, tech = res.stdout.splitlines()[-3:]
    assert where.startswith(str(tmp_path / "site"))  # the unpacked wheel, not the work tree
    assert "reram" in devices and "pcm" in devices and tech == "True"


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
