"""The suite files (*.toml) and the paper's reference tables (reference/*.csv): edited here, shipped inside the
package as `pacebench.benchmarks` (setup.py). The benchmark scripts beside them are run as files and do not ship."""
