#include "scp/pixel_decoder.h"
