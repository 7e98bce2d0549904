# The ways bench.sh and instructions.sh serve the web service (sourced by both; needs $bin,
# the folder of the release binaries):
#   none             bare
#   layer            under sampler-adapter-http's layer alone
#   +watchdog        the layer and the slow-request watchdog following every request
#   +alloc           the layer, the watchdog and the counting allocator (per-request memory on)
#   axum-prometheus  under axum-prometheus's layer
# shellcheck shell=bash
variants=(none layer +watchdog +alloc axum-prometheus)

# The command line of variant $1 (without its addresses and worker count).
command_of() {
  case "$1" in
    none) echo "$bin/web-service-system-alloc --layer none --no-watchdog" ;;
    layer) echo "$bin/web-service-system-alloc --layer sampler --no-watchdog" ;;
    +watchdog) echo "$bin/web-service-system-alloc --layer sampler" ;;
    +alloc) echo "$bin/web-service --layer sampler" ;;
    axum-prometheus) echo "$bin/web-service-system-alloc --layer axum-prometheus --no-watchdog" ;;
  esac
}
