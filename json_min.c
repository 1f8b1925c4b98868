#include "json_min.h"
