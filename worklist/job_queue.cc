#include "worklist/job_queue.h"
