#include "scp/store_scu.h"
