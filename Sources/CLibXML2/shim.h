// libxml2's SAX parser, which reads Berth's configuration files (BerthConfig/LineXML.swift).
#include <libxml/xmlversion.h>
// The system libxml2 is built with ICU and would include the system's ICU headers, whose
// definitions clash with those of the ICU inside Swift's Foundation wherever both are visible.
// Nothing here converts encodings through libxml2 (BerthConfig/XMLEncoding.swift does that
// first), and ICU only adds fields to the encoding handler, which is used through pointers.
#undef LIBXML_ICU_ENABLED
#include <libxml/parser.h>
#include <libxml/SAX2.h>
#include <libxml/xmlerror.h>
