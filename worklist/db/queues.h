// The names of the job queues, shared by the queue's users and by routing,
// which needs no database to say where a read goes.
#pragma once

namespace secondread::worklist {

// A job's queue says which kind of worker runs it.
inline constexpr char kDispatchQueue[] = "dispatch";
inline constexpr char kExportQueue[] = "export";
// Volume reads: few at a time, each holding a whole series in memory.
inline constexpr char kVolumeQueue[] = "volume";

}  // namespace secondread::worklist
