#include "scp/result_objects.h"
