# vlms: every target installs what it needs into .venv (pinned in requirements.lock) once.
PY_BOOT ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
VLMS    := $(VENV)/bin/vlms
STAMP   := $(VENV)/.stamp-installed
SEED    ?= 20260101
# make fit's members of data/cohorts.csv (the first N of its 30): the 60 s budget of issue 15 asks
# for at least 20; MEMBERS=30 fits them all
MEMBERS ?= 20

.PHONY: fit fit-diagnose fit-compare test check report validate bench lint clean venv audit reconstruct browser

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

## fit: sample every registered posterior, diagnose, compare and report
fit: $(STAMP)
	$(VLMS) audit
	$(VLMS) fit --seed $(SEED) --members $(MEMBERS)
	$(MAKE) --no-print-directory -j2 -Otarget fit-diagnose fit-compare
	$(VLMS) report

# Diagnostics and the comparison both read the saved fits only: they run side by side.
fit-diagnose: $(STAMP)
	$(VLMS) diagnose --strict

fit-compare: $(STAMP)
	$(VLMS) compare --seed $(SEED)

## test: the test suite and the linter
test: $(STAMP)
	$(PY) -m pytest -q -n 2
	$(VENV)/bin/ruff check .

## browser: Debian's chromium, for the headless-browser checks of the report page in make test
## (as root; without it those two tests are skipped, with the reason)
browser:
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

## check: the frequentist reproduction of the paper on data/cohort.csv
check: $(STAMP)
	$(VLMS) check

audit: $(STAMP)
	$(VLMS) audit

## reconstruct: the ensemble data/cohorts.csv, one member in data/cohort.csv, reports/calibration.*
reconstruct: $(STAMP)
	$(VLMS) reconstruct --seed $(SEED) --members 30

report: $(STAMP)
	$(VLMS) report

## validate: simulation-based calibration of the models and the reconstruction's round trip
validate: $(STAMP)
	$(VLMS) validate
	$(VLMS) reconstruct --validate --seed $(SEED)
	$(PY) -m analysis.validation.imputation_report --out-dir reports --seed $(SEED)
	$(PY) -m analysis.validation.multistate_check --out reports/validation/multistate.json --seed $(SEED)

bench: $(STAMP)
	$(VLMS) bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) reports/* .pytest_cache .ruff_cache
	touch reports/.gitkeep
