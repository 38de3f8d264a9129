#include "worklist/inference_client.h"
