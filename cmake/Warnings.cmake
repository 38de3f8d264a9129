# Project-wide warnings; applied per target so third-party headers stay quiet.
function(secondread_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
endfunction()

option(SECONDREAD_SANITIZE "Build with AddressSanitizer and UBSan" OFF)
if(SECONDREAD_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
