"""The `sddr` command line (`main.main`) and what only it uses: demo, bench, sample scene."""
