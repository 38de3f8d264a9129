# Embeds text files (the SQL migrations) into a generated C++ source so the
# binary never depends on an install path at run time.
#
# secondread_embed(OUT <file.cc> NAMESPACE <ns> FUNCTION <fn> FILES <f>...)
# generates: std::vector<std::pair<std::string_view, std::string_view>> ns::fn();
function(secondread_embed)
  cmake_parse_arguments(E "" "OUT;NAMESPACE;FUNCTION" "FILES" ${ARGN})
  string(REPLACE ";" "|" files_arg "${E_FILES}")
  add_custom_command(
    OUTPUT ${E_OUT}
    COMMAND ${CMAKE_COMMAND} -DOUT=${E_OUT} -DNS=${E_NAMESPACE} -DFN=${E_FUNCTION}
            "-DFILES=${files_arg}" -P ${CMAKE_SOURCE_DIR}/cmake/EmbedFilesScript.cmake
    DEPENDS ${E_FILES} ${CMAKE_SOURCE_DIR}/cmake/EmbedFilesScript.cmake
    COMMENT "Embedding ${E_FUNCTION}"
    VERBATIM)
endfunction()
