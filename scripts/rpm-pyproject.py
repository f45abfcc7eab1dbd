#!/usr/bin/env python3
"""Stand-ins for Fedora's pyproject-rpm-macros, for rpmbuild on Debian.

Debian's rpm package has no %pyproject_install, %pyproject_save_files or
%pyproject_check_import; scripts/build-rpm defines those macros on
rpmbuild's command line to call this script. It follows what Fedora's
macros do, as far as this package needs:

  install      unpack the wheel(s) into the buildroot with the `installer`
               library (python3-installer), Fedora's layout
               (/usr/lib/pythonX.Y/site-packages, scripts in /usr/bin with
               the distribution's interpreter), INSTALLER "rpm"
  save-files   write the %files list of the named top-level modules and
               their .dist-info (with -l: license files as %license, and
               at least one is required)
  check-import import every module of the saved packages from the buildroot

Python 3.6 compatible; not shipped in any package.
"""
import argparse
import glob
import importlib
import os
import sys


def cmd_install(args):
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    scheme = {
        "purelib": args.sitelib, "platlib": args.sitelib,
        "scripts": args.bindir, "data": args.prefix,
        "headers": os.path.join(args.prefix, "include"),
    }
    wheels = args.wheels
    if not wheels:
        sys.exit("rpm-pyproject install: no wheel given")
    for wheel in wheels:
        destination = SchemeDictionaryDestination(
            scheme, interpreter=args.interpreter, script_kind="posix",
            destdir=args.root, bytecode_optimization_levels=())
        with WheelFile.open(wheel) as source:
            install(source, destination, {"INSTALLER": b"rpm\n"})
        print("installed {} into {}".format(os.path.basename(wheel), args.root))


def _dist_infos(root, sitelib):
    return sorted(glob.glob(os.path.join(root + sitelib, "*.dist-info")))


def cmd_save_files(args):
    site = args.root + args.sitelib
    lines, licenses = [], 0
    for name in args.modules:
        package = os.path.join(site, name)
        module = package + ".py"
        if os.path.isdir(package):
            lines.append(os.path.join(args.sitelib, name) + "/")
        elif os.path.isfile(module):
            lines.append(os.path.join(args.sitelib, name + ".py"))
        else:
            sys.exit("rpm-pyproject save-files: no module {} in {}".format(name, site))
    for info in _dist_infos(args.root, args.sitelib):
        rel = args.sitelib + info[len(site):]
        lines.append("%dir " + rel)
        for dirpath, dirnames, filenames in os.walk(info):
            for d in sorted(dirnames):
                lines.append("%dir " + args.sitelib + os.path.join(dirpath, d)[len(site):])
            for f in sorted(filenames):
                path = args.sitelib + os.path.join(dirpath, f)[len(site):]
                is_license = "/licenses/" in path or f.startswith(("LICENSE", "LICENCE", "COPYING"))
                if is_license and args.license:
                    licenses += 1
                    lines.append("%license " + path)
                else:
                    lines.append(path)
    if args.license and not licenses:
        sys.exit("rpm-pyproject save-files -l: no license file in the .dist-info")
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def cmd_check_import(args):
    site = args.root + args.sitelib
    sys.path.insert(0, site)
    names = []
    for top in sorted(os.listdir(site)):
        if top.endswith(".dist-info") or top.startswith("__"):
            continue
        if top.endswith(".py"):
            names.append(top[:-3])
        elif os.path.isfile(os.path.join(site, top, "__init__.py")):
            for dirpath, _, filenames in os.walk(os.path.join(site, top)):
                if "__init__.py" not in filenames:
                    continue
                package = os.path.relpath(dirpath, site).replace(os.sep, ".")
                for f in sorted(filenames):
                    if f == "__init__.py":
                        names.append(package)
                    elif f.endswith(".py"):
                        names.append(package + "." + f[:-3])
    for name in names:
        module = importlib.import_module(name)
        if not os.path.abspath(module.__file__).startswith(site):
            sys.exit("rpm-pyproject check-import: {} came from {}, not {}".format(
                name, module.__file__, site))
    print("imported {} modules from {}".format(len(names), site))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.required = True
    for name in ("install", "save-files", "check-import"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True, help="the buildroot")
        p.add_argument("--sitelib", required=True, help="%%{python3_sitelib}")
        if name == "install":
            p.add_argument("--bindir", default="/usr/bin")
            p.add_argument("--prefix", default="/usr")
            p.add_argument("--interpreter", default="/usr/bin/python3")
            p.add_argument("wheels", nargs="*")
        elif name == "save-files":
            p.add_argument("--output", required=True)
            p.add_argument("-l", "--license", action="store_true")
            p.add_argument("modules", nargs="+")
    args = parser.parse_args()
    {"install": cmd_install, "save-files": cmd_save_files,
     "check-import": cmd_check_import}[args.command](args)


if __name__ == "__main__":
    main()
