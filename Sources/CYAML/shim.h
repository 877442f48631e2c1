/* libyaml, the C YAML parser (the one Yams wraps), used without Foundation. */
#include <yaml.h>
