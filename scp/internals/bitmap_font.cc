// Placeholder: filled in with the banner font.
namespace secondread::scp::internals {}
