import { INestApplication } from '@nestjs/common';
import { SwaggerModule } from '@nestjs/swagger';
import { buildOpenApiDocument, DOCS_PATH, OPENAPI_JSON_PATH } from './document';

/**
 * Serves the OpenAPI document at /api/openapi.json and Swagger UI at /api/docs. Both are plain routes
 * of the HTTP adapter, outside Nest's controllers, so the bearer guard does not apply: they are public.
 */
export function mountApiDocs(app: INestApplication): void {
  const document = buildOpenApiDocument(app);
  SwaggerModule.setup(DOCS_PATH.slice(1), app, document, {
    jsonDocumentUrl: OPENAPI_JSON_PATH.slice(1),
    yamlDocumentUrl: OPENAPI_JSON_PATH.slice(1).replace(/\.json$/, '.yaml'),
    customSiteTitle: 'admin.vps.org API — snapshots',
    swaggerOptions: {
      persistAuthorization: false,
      displayOperationId: true,
      docExpansion: 'list',
      defaultModelsExpandDepth: 0,
      tryItOutEnabled: false,
    },
  });
}
