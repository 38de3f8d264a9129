#include "scp/derived_uid.h"
