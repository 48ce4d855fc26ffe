# Reads settings.ini, as nbdev's own template does (nbdev_new cannot download its template here).
from configparser import ConfigParser
from pathlib import Path
import setuptools, shlex, shutil
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, "missing expected setting: {}".format(o)
setup_cfg = {o:cfg[o] for o in cfg_keys}

licenses = {
    'apache2': ('Apache Software License 2.0','OSI Approved :: Apache Software License'),
    'mit': ('MIT License', 'OSI Approved :: MIT License'),
}
statuses = [ '1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive' ]
py_versions = '3.11 3.12 3.13'.split()

requirements = shlex.split(cfg.get('requirements', ''))
min_python = cfg['min_python']
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
cluster_requirements = shlex.split(cfg.get('cluster_requirements', ''))   # `pip install 'fer_nb[cluster]'`: Ray Data for `fer-nb corpus --engine ray`

# The files fer_nb finds with `fer_nb.data.find_file` (models, samples, the app page). The top-level folders stay
# the only committed copy: the wheel gets them under fer_nb/_bundle/ at build time, the sdist at their own paths.
HERE = Path(__file__).resolve().parent
BUNDLE = 'fer_nb/_bundle'

def shipped_models()->list:
    "The shipped checkpoints' files: the one models/DEFAULT names and each one models/NAMES names (`name: file` lines)."
    files = [(HERE/'models'/'DEFAULT').read_text().strip()]
    names = HERE/'models'/'NAMES'
    for line in (names.read_text().splitlines() if names.is_file() else []):
        name, sep, file = line.partition('#')[0].partition(':')
        if sep and file.strip() and file.strip() not in files: files.append(file.strip())
    return files

def bundle_files()->list:
    "Paths (relative to the project root) that a wheel carries: the shipped models and their cards, YuNet, the sample, the app page."
    models = shipped_models()
    files = ['models/DEFAULT', *(['models/NAMES'] if (HERE/'models'/'NAMES').is_file() else []),
             *[f'models/{m}' for m in models], *[f'models/{Path(m).with_suffix(".json")}' for m in models],
             'models/yunet/yunet_n_640_640.onnx', 'models/yunet/LICENSE', 'models/yunet/README.md',
             'samples/astronaut.png', 'samples/README.md', 'nbs/app.ipynb']
    missing = [f for f in files if not (HERE/f).is_file()]
    if missing: raise FileNotFoundError(f"files the wheel must carry are missing: {missing}")
    return files

class BuildPyWithBundle(build_py):
    "build_py that also copies `bundle_files()` into <build_lib>/fer_nb/_bundle/ (never into the source tree)."
    def run(self):
        super().run()
        if self.editable_mode: return          # an editable install finds them in the checkout itself
        dest = Path(self.build_lib)/BUNDLE
        shutil.rmtree(dest, ignore_errors=True)  # nothing stale from an earlier build (another DEFAULT)
        for f in bundle_files():
            (dest/f).parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(HERE/f), str(dest/f), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        outs = super().get_outputs(include_bytecode)
        if self.editable_mode: return outs
        return outs + [str(Path(self.build_lib)/BUNDLE/f) for f in bundle_files()]

class SdistWithBundle(sdist):
    "sdist that also carries the shipped models that models/DEFAULT and models/NAMES name (MANIFEST.in lists the fixed files)."
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, sorted(set(files) | set(bundle_files())))

setuptools.setup(
    cmdclass = {'build_py': BuildPyWithBundle, 'sdist': SdistWithBundle},
    name = cfg['lib_name'],
    license = lic[0],
    classifiers = [
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
    ] + ['Programming Language :: Python :: '+o for o in py_versions[py_versions.index(min_python):]] + (['License :: ' + lic[1] ] if lic[1] else []),
    url = cfg['git_url'],
    packages = setuptools.find_packages(include=['fer_nb', 'fer_nb.*']),
    include_package_data = True,
    package_data = {'fer_nb': ['static/*.html', 'static/*.css', 'static/*.js']},   # the light page `fer-nb serve` shows at /
    install_requires = requirements,
    extras_require={ 'dev': dev_requirements, 'cluster': cluster_requirements },
    dependency_links = cfg.get('dep_links','').split(),
    python_requires  = '>=' + cfg['min_python'],
    long_description = open('README.md', encoding='utf-8').read(),
    long_description_content_type = 'text/markdown',
    zip_safe = False,
    entry_points = {
        'console_scripts': cfg.get('console_scripts','').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d']
    },
    **setup_cfg)
