#include "sigv4.h"
